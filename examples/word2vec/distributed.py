"""Where the trainer runs: its devices, the data-parallel mesh, and ``jax.distributed`` for several processes.

* **One process** (the default): ``--device`` (a platform such as ``gpu``, a device such as ``gpu:1`` or a TF
  device string, read by :func:`jaxgraph.parse_device_spec`) and ``--devices N``, that device and the next
  ``N - 1`` of its platform. With N > 1 they form a :func:`jaxgraph.sharding.make_mesh` mesh; everything is
  replicated on it and each step's centres are split over it (``step.py``).
* **Several processes** (hosts): the same command once per process with ``--coordinator-address HOST:PORT``,
  ``--num-processes P`` and each its own ``--process-id`` (or ``--distributed-auto``: JAX detects a Cloud TPU,
  Slurm or Open MPI cluster). :func:`start_processes` joins them with ``jax.distributed`` before JAX's backends
  start (CPU collectives through gloo); ``--devices`` then counts each process's *local* devices and the mesh
  spans all ``P x N`` of them, in process order, with the result of one process of ``P x N`` devices. Before
  training the processes check that they agree on the corpus, flags, devices and start step
  (:func:`processes_agree`). Process 0 (the chief) alone prints and writes outputs; every process runs the same
  steps, and after each call they all decide together whether to stop (:func:`stop_everywhere`). A process that
  dies makes the others fail too, but only once JAX's distributed runtime notices (seconds to minutes).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from examples.word2vec.cli import UsageError, first_line
from jaxgraph.device import parse_device_spec
from jaxgraph.sharding import make_mesh, put, shard_opt_state, shard_params

__all__ = ["Runtime", "host_values", "processes_agree", "select_runtime", "start_processes", "stop_everywhere"]

_STARTED_TOO_LATE = ("the multi-process flags need jax.distributed to start before JAX's backends, which already "
                     "started in this process: run the trainer as its own process (python -m examples.word2vec.train "
                     "...)")


def start_processes(coordinator_address: str | None, num_processes: int | None, process_id: int | None,
                    auto: bool = False) -> None:
    """Join the other processes (``jax.distributed.initialize``) when a coordinator is given or ``auto``.

    Must come before JAX's backends start (``python -m examples.word2vec.train`` starts none before it).
    """
    if coordinator_address is None and not auto:
        return
    if jax.distributed.is_initialized():  # an earlier main() in this process, or the caller, joined already
        if auto or (jax.process_count(), jax.process_index()) == (num_processes, process_id):
            return
        raise UsageError(f"jax.distributed is already initialized as process {jax.process_index()} of "
                         f"{jax.process_count()}, not as --process-id {process_id} of {num_processes}")
    try:
        if auto:
            jax.distributed.initialize()
        else:
            jax.distributed.initialize(coordinator_address=coordinator_address, num_processes=num_processes,
                                       process_id=process_id)
    except (RuntimeError, ValueError) as e:
        if "before any JAX" in str(e):  # JAX's refusal once its backends have started
            raise UsageError(_STARTED_TOO_LATE) from None
        raise UsageError(f"jax.distributed.initialize failed: {first_line(e)}") from None
    # Read when the CPU backend starts, which comes later; harmless on GPU/TPU.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")


@dataclasses.dataclass(frozen=True)
class Runtime:
    """The devices of a run: ``device`` (this process's first), ``devices`` (the mesh's, over all processes, in
    mesh order) and ``mesh`` (None on one device)."""

    device: jax.Device
    devices: list[jax.Device]
    mesh: Mesh | None

    @property
    def chief(self) -> bool:
        """Process 0, which prints and writes every output."""
        return jax.process_index() == 0

    @property
    def processes(self) -> int:
        return jax.process_count()

    def describe(self) -> str:
        where = str(self.device) if len(self.devices) == 1 else f"{len(self.devices)} devices: {self.devices}"
        return where + (f" ({self.processes} processes)" if self.processes > 1 else "")

    def place(self, tree: tuple[Any, Any, Any]) -> tuple[Any, Any, Any]:
        """``(params, opt_state, data)`` on the run's devices: on one device, or replicated on the mesh (the
        batch is split inside the step; with several processes each supplies its copy)."""
        params, opt_state, data = tree
        if self.mesh is None:
            return jax.device_put(tree, self.device)
        params = shard_params(params, self.mesh, [])
        opt_state = shard_opt_state(opt_state, params, self.mesh, [])
        return params, opt_state, self.place_data(data)

    def place_data(self, data: Any) -> Any:
        """A tree of host arrays on the run's device, or replicated on the mesh (each process supplies its copy)."""
        if self.mesh is None:
            return jax.device_put(data, self.device)
        replicated = NamedSharding(self.mesh, P())
        return jax.tree_util.tree_map(lambda x: put(x, replicated), data)


def select_runtime(spec: str | None, count: int | None) -> Runtime:
    """The run's devices: ``--device`` (``spec``, default JAX's first local device) and the next ones of its
    platform, ``--devices`` (``count``, default 1) per process.

    One device is the default everywhere: on the 2-core CPU we measured, ``--devices 2`` ran at about 0.2x the
    speed of one device (a rendezvous of the device threads every step costs more than the ~0.5 ms step; the
    batch, negatives and scatters are repeated on each device; XLA's own threads already use the second core).
    """
    device = _device(spec)
    devices = _mesh_devices(device, 1 if count is None else count)
    return Runtime(device, devices, make_mesh(devices=devices) if len(devices) > 1 else None)


def _device(spec: str | None) -> jax.Device:
    if spec is None:
        return jax.local_devices()[0]
    # JAX also calls GPUs by their runtime's name
    tf_spec = re.sub(r"^(cuda|rocm)(?=:|$)", "gpu", spec, flags=re.IGNORECASE)
    try:
        return parse_device_spec(tf_spec)
    except ValueError as e:
        raise UsageError(f"--device {spec!r}: {e}") from None


def _mesh_devices(device: jax.Device, n: int) -> list[jax.Device]:
    """``n`` devices of ``device``'s platform from ``device`` on, at the same local positions in every process,
    process 0's first."""
    same = [d for d in jax.devices(device.platform) if d.process_index == device.process_index]
    start = same.index(device) if device in same else 0
    available = same[start:]
    if n > len(available):
        hint = ""
        if device.platform == "cpu":
            hint = (f"; JAX started with {len(same)} CPU device(s) before the trainer could ask for more: set "
                    f"XLA_FLAGS=--xla_force_host_platform_device_count={n} before JAX starts")
        per = " in this process" if jax.process_count() > 1 else ""
        raise UsageError(f"--devices {n}: only {len(available)} {device.platform} device(s) from "
                         f"{device} on{per}{hint}")
    if jax.process_count() == 1:
        return available[:n]
    devices = []
    for p in range(jax.process_count()):
        theirs = [d for d in jax.devices(device.platform) if d.process_index == p][start: start + n]
        if len(theirs) < n:
            raise UsageError(f"--devices {n}: process {p} has only {len(theirs)} {device.platform} device(s) "
                             f"from local device {start} on")
        devices += theirs
    return devices


def host_values(tree: Any) -> Any:
    """The values of a tree of replicated arrays on the host, read from each array's first local copy (with
    several processes an array spans devices this process cannot read; every process holds a full copy)."""
    local = jax.tree_util.tree_map(lambda x: x.addressable_data(0) if isinstance(x, jax.Array) else x, tree)
    return jax.device_get(local)


def processes_agree(fields: dict[str, Sequence[int] | int]) -> None:
    """With several processes, check that every process has the same ``fields`` (small int32 values): the
    same corpus and training flags, devices, and start step (e.g. all resumed the same checkpoint)."""
    if jax.process_count() == 1:
        return
    from jax.experimental import multihost_utils

    names, parts = [], []
    for name, value in fields.items():
        value = np.atleast_1d(np.asarray(value, np.int32))
        names += [name] * len(value)
        parts.append(value)
    mine = np.concatenate(parts)
    try:
        everyone = np.asarray(multihost_utils.process_allgather(mine)).reshape(jax.process_count(), len(mine))
    except RuntimeError as e:  # e.g. gloo's 30 s deadline: another process failed before it got here
        raise UsageError("this process could not reach the other processes (did one of them fail?): "
                         f"{first_line(e)}") from None
    differ = [n for n in fields if n in {names[j] for j in np.nonzero((everyone != everyone[0]).any(axis=0))[0]}]
    if differ:
        shown = [n for n in differ if n != "fingerprint"]
        detail = "; ".join(f"process {i}: " + ", ".join(f"{n} {everyone[i][names.index(n)]}" for n in shown)
                           for i in range(len(everyone)))
        what = ", ".join("the corpus, vocabulary or training flags" if n == "fingerprint" else n for n in differ)
        raise UsageError(f"the processes disagree on {what}{f' ({detail})' if shown else ''}: run every process "
                         "with the same flags and files (--resume: the same checkpoint on a shared filesystem)")


def stop_everywhere(requested: bool) -> bool:
    """Whether any process asked to stop (Ctrl-C): every process makes the same decision after each call."""
    if jax.process_count() == 1:
        return requested
    from jax.experimental import multihost_utils

    return bool(np.asarray(multihost_utils.process_allgather(np.array([requested], np.int32))).any())
