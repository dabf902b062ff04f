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
  (:func:`processes_agree`), and a process whose setup failed says so to the others (:func:`setup_together`).
  Process 0 (the chief) alone prints and writes outputs; every process runs the same
  steps, and after each call they all decide together whether to stop (:func:`stop_everywhere`).

Faults between processes, each one line on stderr:

* **A process that never comes.** Every process prints ``waiting for ...`` (stderr) when the others have not joined
  within a few seconds, and gives up after ``--initialization-timeout`` seconds with an error naming the
  processes it waited for (exit status 2; JAX's own deadline, a minute later, would abort with a stack trace).
* **A process that dies** (killed, out of memory, its host gone). The others find out at their next collective,
  within the call: :class:`PeerLost` names the process (in a run of two; with more, "one of the others"), the
  chief saves a checkpoint of the last completed call (with several processes the state is not donated, so it is
  still readable: one copy of the tables per call), every survivor prints one ``error:`` line, and they leave at
  once (:func:`leave`: exit status 2 without JAX's shutdown barrier, which would wait for the dead process).
  When process 0 itself dies, JAX's runtime ends the others from C++ as soon as it notices (process 0 hosts the
  coordination service), racing with their own line from a failed collective. The client's callback for that
  (``missed_heartbeat_callback`` of jaxlib's ``get_distributed_runtime_client``) cannot be a Python function in jax
  0.10.2: calling it aborts with ``std::bad_cast``. Resume from the chief's last periodic checkpoint.
* **Before and after the loop** the processes meet (:func:`_meet`) through JAX's coordination service, not a
  collective, so that a process waits for the others as long as their work takes: at the end of the setup
  (:func:`setup_together`; reading a corpus may take much longer on one host) and after the loop (:func:`leave`:
  the chief comes once its outputs are written). Each process renews a sign of life every second (a thread); one
  that is missing from a meeting and silent for ``SILENCE_TIMEOUT_S`` is taken for gone: before training the others
  stop with one ``error:`` line, after the loop they leave with their own status and one ``warning:`` line, at once
  (:func:`leave`), in both cases.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import os
import re
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from examples.word2vec.cli import (
    UsageError,
    first_line,
    interrupt_status,
    raise_on_signals,
    signal_name,
    stop_signal,
    stop_signals_deferred,
)
from jaxgraph.device import parse_device_spec
from jaxgraph.sharding import make_mesh, put, shard_opt_state, shard_params

__all__ = ["PeerLost", "Runtime", "host_values", "leave", "loop_ended_together", "lost_peer", "processes_agree",
           "select_runtime", "setup_together", "start_processes", "stop_everywhere", "stopped_by_signal"]

#: Seconds before the "waiting for ..." line, while the processes join.
WAIT_NOTICE_S = 3.0
#: JAX's heartbeat timeout (its default is 100 s): see start_processes.
HEARTBEAT_TIMEOUT_S = 3600

_STARTED_TOO_LATE = ("the multi-process flags need jax.distributed to start before JAX's backends, which already "
                     "started in this process: run the trainer as its own process (python -m examples.word2vec.train "
                     "...)")


def start_processes(coordinator_address: str | None, num_processes: int | None, process_id: int | None,
                    auto: bool = False, initialization_timeout: int = 300) -> None:
    """Join the other processes (``jax.distributed.initialize``) when a coordinator is given or ``auto``, waiting
    at most ``initialization_timeout`` seconds for all of them (said on stderr after a few seconds).

    Must come before JAX's backends start (``python -m examples.word2vec.train`` starts none before it).
    """
    if coordinator_address is None and not auto:
        return
    if jax.distributed.is_initialized():  # an earlier main() in this process, or the caller, joined already
        if auto or (jax.process_count(), jax.process_index()) == (num_processes, process_id):
            return
        raise UsageError(f"jax.distributed is already initialized as process {jax.process_index()} of "
                         f"{jax.process_count()}, not as --process-id {process_id} of {num_processes}")
    awaited = _awaited(num_processes, process_id) if not auto else "the other processes"
    where = coordinator_address or "the detected coordinator"
    gave_up = (f"{awaited} did not join at {where} within --initialization-timeout {initialization_timeout} s: start "
               "every process with the same --coordinator-address and --num-processes, each with its own "
               "--process-id")
    joined = threading.Event()

    def notice() -> None:
        if not joined.is_set():
            print(f"waiting for {awaited} to join at {where} (up to --initialization-timeout {initialization_timeout} "
                  "s)", file=sys.stderr, flush=True)

    def give_up() -> None:
        # JAX's own deadline ends the process from C++ (an abort and its stack trace): ours comes first.
        if not joined.is_set():
            print(f"error: {gave_up}", file=sys.stderr, flush=True)
            os._exit(2)

    timers = [threading.Timer(min(WAIT_NOTICE_S, initialization_timeout / 2), notice),
              threading.Timer(initialization_timeout, give_up)]
    for timer in timers:
        timer.daemon = True
        timer.start()
    jax_timeout = initialization_timeout + 60
    # JAX's heartbeat timeout ends every process from C++ (an abort) once one has been gone that long, whatever they
    # are doing: a chief still writing its outputs, a process still reading its corpus. The trainer finds a lost
    # process itself (a failed collective in the loop, a meeting before and after it), so JAX's comes much later.
    try:
        if auto:
            jax.distributed.initialize(initialization_timeout=jax_timeout,
                                       heartbeat_timeout_seconds=HEARTBEAT_TIMEOUT_S)
        else:
            jax.distributed.initialize(coordinator_address=coordinator_address, num_processes=num_processes,
                                       process_id=process_id, initialization_timeout=jax_timeout,
                                       heartbeat_timeout_seconds=HEARTBEAT_TIMEOUT_S)
    except (RuntimeError, ValueError) as e:
        if "before any JAX" in str(e):  # JAX's refusal once its backends have started
            raise UsageError(_STARTED_TOO_LATE) from None
        if "DEADLINE_EXCEEDED" in str(e):
            raise UsageError(gave_up) from None
        raise UsageError(f"jax.distributed.initialize failed: {first_line(e)}") from None
    finally:
        joined.set()
        for timer in timers:
            timer.cancel()
    # Read when the CPU backend starts, which comes later; harmless on GPU/TPU.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")


def _awaited(num_processes: int | None, process_id: int | None) -> str:
    """Whom process ``process_id`` waits for: ``"process 1"``, ``"processes 1, 2 and 3"``.

    >>> _awaited(2, 0), _awaited(4, 2)
    ('process 1', 'processes 0, 1 and 3')
    """
    others = [i for i in range(num_processes or 0) if i != process_id]
    return _names(others) if others else "the other processes"


def _names(processes: list[int]) -> str:
    """``"process 1"``, ``"processes 1 and 3"``.

    >>> _names([2]), _names([1, 2, 3])
    ('process 2', 'processes 1, 2 and 3')
    """
    if len(processes) == 1:
        return f"process {processes[0]}"
    return f"processes {', '.join(map(str, processes[:-1]))} and {processes[-1]}"


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
        where = str(self.device) if len(self.devices) == 1 else (
            f"{len(self.devices)} devices: {', '.join(map(str, self.devices))}")
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
    if jax.process_count() > 1:
        _presence.start()  # before this process's setup, which the others may wait for at its end
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
    names, parts = [], []
    for name, value in fields.items():
        value = np.atleast_1d(np.asarray(value, np.int32))
        names += [name] * len(value)
        parts.append(value)
    mine = np.concatenate(parts)
    everyone = _gather_before_training(mine).reshape(jax.process_count(), len(mine))
    differ = [n for n in fields if n in {names[j] for j in np.nonzero((everyone != everyone[0]).any(axis=0))[0]}]
    if differ:
        shown = [n for n in differ if n != "fingerprint"]
        detail = "; ".join(f"process {i}: " + ", ".join(f"{n} {everyone[i][names.index(n)]}" for n in shown)
                           for i in range(len(everyone)))
        what = ", ".join("the corpus, vocabulary or training flags" if n == "fingerprint" else n for n in differ)
        raise UsageError(f"the processes disagree on {what}{f' ({detail})' if shown else ''}: run every process "
                         "with the same flags and files (--resume: the same checkpoint on a shared filesystem)")


def stop_everywhere(signum: int, failed: bool) -> tuple[int, bool]:
    """Whether any process asked to stop (its stop signal, 0: none) or could not write a checkpoint: every process
    makes the same decision after each call."""
    if jax.process_count() == 1:
        return signum, failed
    from jax.experimental import multihost_utils

    votes = np.asarray(multihost_utils.process_allgather(np.array([signum, int(failed)], np.int32)))
    votes = votes.reshape(jax.process_count(), 2)
    asked = [int(s) for s in votes[:, 0] if s]
    return (asked[0] if asked else 0), bool(votes[:, 1].any())


_SETUP_FAILED = -1  # a process's vote at the end of setup: 0 ready, this one failed, or the stop signal's number


@contextlib.contextmanager
def setup_together(errors: tuple[type[BaseException], ...]) -> Iterator[None]:
    """With several processes, the block (a run's setup) ends in a vote: a process whose setup raised one of
    ``errors``, or was stopped by a signal (``KeyboardInterrupt``, :class:`~examples.word2vec.cli.Interrupted`),
    votes so before re-raising it, and the others then stop with an error naming it at once, instead of waiting at
    their next collective for a process that has left (gloo's 30 s, then a vaguer message)."""
    if jax.process_count() == 1:
        yield
        return
    try:
        yield
    except errors:
        _vote_on_setup(_SETUP_FAILED)
        raise
    except KeyboardInterrupt as e:
        _vote_on_setup(stop_signal(e))
        raise
    stopped = [(i, vote) for i, vote in enumerate(_vote_on_setup(0)) if vote]
    if stopped:
        what = "; ".join(f"process {i} stopped before training (see its error line)" if vote == _SETUP_FAILED else
                         f"process {i} was interrupted by {signal_name(vote)} before training" for i, vote in stopped)
        raise UsageError(f"{what}; this process stops too")


def _vote_on_setup(vote: int) -> list[int]:
    """Every process's vote at the end of its setup, however long the others' setups take (reading a large corpus
    on a slower disk): a meeting (:func:`_meet`), not a collective, whose first call would give the others 30 s
    (gloo's deadline to connect)."""
    try:
        return _meet("setup", vote, waiting_for="end its setup")
    except _Silent as e:
        _left.set()
        raise UsageError(f"{e} before training; this process stops too") from None


def _gather_before_training(mine: np.ndarray) -> np.ndarray:
    """Every process's ``mine``, stacked (``process_allgather``), before the training loop. A process that is gone
    (killed, crashed) fails it at gloo's deadline (30 s): one error line naming it, and :func:`leave` then exits at
    once, not through JAX's shutdown barrier, which would wait for the dead process and then abort.

    :func:`processes_agree` uses it, right after the setup meeting, on purpose: the run's first gloo collective is
    where gloo connects the processes, within 30 s of each other, which they are there; the first call's collective,
    after compiles that may end further apart, would otherwise be the first."""
    from jax.experimental import multihost_utils

    try:
        return np.asarray(multihost_utils.process_allgather(mine))
    except RuntimeError as e:  # jax.errors.JaxRuntimeError
        _left.set()
        raise UsageError(f"{lost_peer(e)} before training; this process stops too") from None


class PeerLost(Exception):
    """Another process is gone: its collectives fail. Carries the state of the last completed call (``params``,
    ``opt_state`` at global step ``step``), which the chief saves."""

    def __init__(self, message: str, params: Any, opt_state: Any, step: int) -> None:
        super().__init__(message)
        self.params, self.opt_state, self.step = params, opt_state, step
        _left.set()


_left = threading.Event()  # set once a peer is lost: the process must not wait for it when it exits
_loop_ended_together = threading.Event()  # every process left the training loop after the same call


def lost_peer(error: BaseException) -> str:
    """What a failed collective means, in one line naming the process that is gone (in a run of two processes, the
    other one; with more, the collective cannot tell which: JAX's coordination service only learns it after its
    heartbeat timeout, 100 s) and the error's first line."""
    me, n = jax.process_index(), jax.process_count()
    who = f"process {1 - me}" if n == 2 else f"one of the other {n - 1} processes"
    return f"{who} stopped responding ({first_line(error)})"


def loop_ended_together() -> None:
    """Say that every process ended the training loop after the same call: :func:`leave` then meets the others
    before JAX's shutdown."""
    if jax.process_count() > 1:
        _loop_ended_together.set()


def stopped_by_signal(signum: int) -> None:
    """Say that this process was stopped by signal ``signum`` outside the training loop. After a loop that ended
    together, a process other than the chief then leaves at once: :func:`leave` skips the meetings (it does not wait
    for the chief's outputs), and the others, told so, leave without waiting for it (a ``warning:`` line naming the
    signal). The chief still comes to them: the others are there, waiting for it, and leaving first it would take
    the coordination service, in its process, with it."""
    if _loop_ended_together.is_set() and not _left.is_set() and jax.process_index() != 0:
        _leave_meetings(signum)


def leave(status: int) -> None:
    """End the program with ``status``. After a lost peer, at once (``os._exit`` once the output is flushed): a
    normal exit would run JAX's shutdown, which waits at a barrier for every process, the dead one included, and
    aborts from C++ when JAX's heartbeat timeout (100 s) declares it dead.

    With several processes that ended the loop together (:func:`loop_ended_together`), every process first meets the
    others (:func:`_meet`), the chief once its outputs are written: one that died after the loop (while the chief
    wrote its outputs) does not come, and the others say so on one ``warning:`` line and leave at once with their own
    status, after ``SILENCE_TIMEOUT_S`` at most. One stopped by a signal after the loop (:func:`stopped_by_signal`)
    does not come either, but says so: the others warn without waiting for it."""
    if _loop_ended_together.is_set() and not _left.is_set():
        status = _part(status)
    if _left.is_set():
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    sys.exit(status)


#: Seconds without a sign of life (its presence, renewed every second by a thread) after which a process that has not
#: come to a meeting is taken for gone.
SILENCE_TIMEOUT_S = 30.0
#: Seconds a process waits at a meeting before it says whom it waits for (setups may differ by seconds).
MEETING_NOTICE_S = 10.0
_PRESENCE_INTERVAL_S = 1.0
_KEYS = "examples.word2vec"  # the trainer's keys in the coordination service's key-value store


class _Silent(Exception):
    """Processes that did not come to a meeting and showed no sign of life for ``SILENCE_TIMEOUT_S``, or process 0
    when the coordination service it hosts is gone (``why``: the client's error)."""

    def __init__(self, processes: list[int], why: str | None = None) -> None:
        self.processes = processes
        why = why or f"no sign of life for {SILENCE_TIMEOUT_S:.0f} s"
        super().__init__(f"{_names(processes)} stopped responding ({why})")


def _leave_meetings(signum: int) -> None:
    """Leave without the meetings still to come: this process counts as come to each of them, with ``-signum``
    (a status is never negative), and exits at once (``_left``)."""
    _left.set()
    try:
        _client().key_value_set(f"{_KEYS}/gone/{jax.process_index()}", str(signum))
    except RuntimeError:  # the store (in the chief) is gone: there is no one to tell
        pass


def _client() -> Any:
    """JAX's coordination-service client (as ``jax.experimental.multihost_utils`` reaches it)."""
    from jax._src import distributed as jax_distributed

    return jax_distributed.global_state.client


class _Presence:
    """This process's sign of life for the others' meetings: a thread that renews the key ``alive/<process>`` every
    second, for the life of the process. A process that is busy (reading its corpus, compiling) stays present; one
    that died stops renewing it."""

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._renew, args=(_client(), jax.process_index()), daemon=True,
                                            name="presence")
            self._thread.start()

    @staticmethod
    def _renew(client: Any, me: int) -> None:
        for beat in itertools.count():
            try:
                client.key_value_set(f"{_KEYS}/alive/{me}", str(beat), allow_overwrite=True)
            except RuntimeError:  # the coordination service (in the chief) is gone: JAX ends this process
                return
            time.sleep(_PRESENCE_INTERVAL_S)


_presence = _Presence()
_meetings = itertools.count()  # every process holds the same meetings in the same order
_came_to: list[str | None] = [None]  # the last meeting this process came to (its value is in the store)


def _meet(name: str, mine: int, waiting_for: str | None = None) -> list[int]:
    """Every process's value ``mine`` for the next meeting (``name`` says which, for whoever reads the store), in
    process order, through the coordination service's key-value store. Waits as long as the others are present,
    however long their work takes (unlike a collective), saying so on stderr after ``MEETING_NOTICE_S`` when
    ``waiting_for`` says what they are doing; raises :class:`_Silent` naming the processes that did not come and
    whose presence stopped for ``SILENCE_TIMEOUT_S`` (or process 0, when the store is gone). A process that left
    after a stop signal (:func:`_leave_meetings`) gives ``-signum``. A stop signal is not held up: the store is
    polled."""
    try:
        return _wait_at_meeting(_client(), name, mine, waiting_for)
    except RuntimeError as e:  # jax.errors.JaxRuntimeError: the store, in process 0, is gone
        raise _Silent([0], first_line(e)) from None


def _wait_at_meeting(client: Any, name: str, mine: int, waiting_for: str | None) -> list[int]:
    me, n = jax.process_index(), jax.process_count()
    topic = f"{_KEYS}/meeting/{next(_meetings)}-{name}/"
    # A stop signal between the write and its record (during the write's round trip) would make _part leave at once,
    # although the others, told this process came, would then wait for it at JAX's shutdown.
    with stop_signals_deferred():
        client.key_value_set(f"{topic}{me}", str(mine))
        _came_to[0] = name
    seen: dict[int, tuple[str | None, float]] = {}  # a missing process's last presence, and when it changed
    renewed: set[int] = set()  # missing processes seen renewing their presence during this wait
    notice_at = time.monotonic() + MEETING_NOTICE_S if waiting_for else float("inf")
    while True:
        came = _values_by_process(client, topic)
        if len(came) < n:
            came = {i: -signum for i, signum in _values_by_process(client, f"{_KEYS}/gone/").items()} | came
        if len(came) == n:
            return [came[i] for i in range(n)]
        missing = [i for i in range(n) if i not in came]
        now = time.monotonic()
        alive = dict(client.key_value_dir_get(f"{_KEYS}/alive/"))
        silent = []
        for i in missing:
            beat = alive.get(f"{_KEYS}/alive/{i}")
            if i not in seen:
                seen[i] = (beat, now)
            elif seen[i][0] != beat:
                seen[i] = (beat, now)
                renewed.add(i)
            elif now - seen[i][1] > SILENCE_TIMEOUT_S:
                silent.append(i)
        if silent:
            raise _Silent(silent)
        # Only a process seen renewing its presence lately is said to be working: one that died is named later, when
        # it has been silent for SILENCE_TIMEOUT_S.
        working = [i for i in missing if i in renewed and now - seen[i][1] < 3 * _PRESENCE_INTERVAL_S]
        if now > notice_at and working:
            print(f"waiting for {_names(working)} to {waiting_for} (present, still working)", file=sys.stderr,
                  flush=True)
            notice_at = float("inf")
        time.sleep(0.05)


def _values_by_process(client: Any, directory: str) -> dict[int, int]:
    """The store's keys ``<directory><process>``, as ``{process: int(value)}``."""
    return {int(key.rsplit("/", 1)[1]): int(value) for key, value in client.key_value_dir_get(directory)}


def _part(status: int) -> int:
    """The meeting after the loop (:func:`leave`), twice: every process comes to the first when it is done (the chief
    once its outputs are written), and to the second once everyone has come to the first, so that one that died while
    the others worked is missed at the second, and one that left after a stop signal is named on a warning line.
    ``status``; 2 in a process that finds the chief gone (its outputs may be missing); 130 or 143 in one stopped by a
    signal while it waits, which then leaves at once unless the others already know it came to the second."""
    try:
        with raise_on_signals():
            _meet("done", status, waiting_for="finish")
            statuses = _meet("leaving", status)
    except _Silent as e:
        _left.set()
        if 0 in e.processes and jax.process_index() != 0:  # the chief's outputs may be missing
            print(f"error: {e} after the training loop", file=sys.stderr)
            return 2
        print(f"warning: {e} after the training loop; leaving without waiting for it", file=sys.stderr)
        return status
    except KeyboardInterrupt as e:  # Ctrl-C or SIGTERM while waiting
        signum = stop_signal(e)
        print(f"interrupted by {signal_name(signum)} after the training loop, waiting for the other processes",
              file=sys.stderr)
        if _came_to[0] != "leaving":  # else the others, told it came, go on to JAX's shutdown, which then waits for it
            _leave_meetings(signum)
        return interrupt_status(signum)
    if gone := [f"process {i} was interrupted by {signal_name(-s)}" for i, s in enumerate(statuses) if s < 0]:
        _left.set()  # JAX's shutdown would wait for the process that left
        print(f"warning: {'; '.join(gone)} after the training loop; leaving without waiting for it", file=sys.stderr)
    return status
