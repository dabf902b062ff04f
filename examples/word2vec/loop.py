"""The training loop: one compiled call at a time (``step.py``), and what happens between calls.

The calls come from the plan (``plan.py``): K steps each, or fewer so that a call ends exactly on every
``--checkpoint-every`` and ``--eval-every`` step and at the run's end. Before each call the corpus feed
(``feed.py``) gives the call its data (a new chunk of a streamed corpus when the position has moved into it);
after each call the host reads the call's losses and the corpus position (the only transfer from the device),
then, in this order: records the figures (:class:`RunStats`), reports them (progress bar, TensorBoard), stops on
a non-finite loss (naming its step), prints nearest neighbours and writes the checkpoint that fall on this step,
and asks every process whether to stop (a stop signal, :func:`~examples.word2vec.cli.stop_requests`, or a
checkpoint that could not be written).

A checkpoint that cannot be written (disk full, permissions) ends the loop there, keeping the trained state
(:attr:`Outcome.save_error`): the trainer still exports the vectors and ends with one ``error:`` line. With
several processes, a process that dies makes the others' next collective fail: :class:`~examples.word2vec.
distributed.PeerLost` carries the state of the last completed call (not donated in that case) so the chief can
save it.
"""

from __future__ import annotations

import collections
import contextlib
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import numpy as np

import jaxgraph as jg
from examples.word2vec.checkpoints import Checkpointer
from examples.word2vec.cli import StopRequest, UsageError, out_of_memory, stop_requests
from examples.word2vec.distributed import PeerLost, host_values, lost_peer, stop_everywhere
from examples.word2vec.evaluation import nearest_lines
from examples.word2vec.feed import CorpusFeed, StreamingFeed
from examples.word2vec.optimizer import Schedule
from examples.word2vec.plan import RunPlan
from examples.word2vec.step import MultiStep
from jaxgraph.train import CheckpointWriteError

__all__ = ["Outcome", "Progress", "RunStats", "StopRequest", "TrainingLoop", "stop_requests", "summary_writer"]


class RunStats:
    """The figures of a run so far: the loss per pair over the last ~2,000 steps, words/sec, totals.

    Positions count in-vocabulary tokens across epochs (``epoch * n_tokens + position``); words/sec counts raw
    corpus tokens (out-of-vocabulary ones included, ``raw_per_token`` per in-vocabulary token), as gensim's
    "raw words" do.

    >>> stats = RunStats(steps_per_call=2, n_tokens=100, raw_per_token=1.5, position=0)
    >>> stats.record(np.array([6.0, 4.0]), np.array([5, 5]), position=40, seconds=0.5)
    120.0
    >>> stats.average_loss, stats.epochs, stats.examples_per_sec
    (1.0, 0.4, 20.0)
    """

    def __init__(self, steps_per_call: int, n_tokens: int, raw_per_token: float, position: int) -> None:
        self.n_tokens, self.raw_per_token, self.position = n_tokens, raw_per_token, position
        self.recent: collections.deque[tuple[float, int]] = collections.deque(maxlen=max(1, 2000 // steps_per_call))
        self.seconds, self.pairs, self.tokens = 0.0, 0, 0

    def record(self, losses: np.ndarray, pairs: np.ndarray, position: int, seconds: float) -> float:
        """Add one call's figures; returns that call's raw words/sec."""
        tokens = position - self.position
        self.position = position
        self.seconds += seconds
        self.tokens += tokens
        self.pairs += int(pairs.sum())
        self.recent.append((float(losses.sum()), int(pairs.sum())))
        return tokens * self.raw_per_token / max(seconds, 1e-9)

    @property
    def average_loss(self) -> float | None:
        if not self.recent:
            return None
        return sum(x for x, _ in self.recent) / max(sum(n for _, n in self.recent), 1)

    @property
    def epochs(self) -> float:
        return self.position / self.n_tokens

    @property
    def words_per_sec(self) -> float | None:
        return self.tokens * self.raw_per_token / self.seconds if self.seconds else None

    @property
    def examples_per_sec(self) -> float | None:
        return self.pairs / self.seconds if self.seconds else None


class Progress:
    """A tqdm progress bar on stderr (a plain status line without tqdm; nothing when disabled)."""

    def __init__(self, total: int, initial: int, enabled: bool) -> None:
        self.bar = None
        self.enabled = enabled
        self.total = total
        if not enabled:
            return
        try:
            from tqdm import tqdm
        except ImportError:
            return
        self.bar = tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True, file=sys.stderr)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def update(self, step: int, n: int, loss: float, wps: float, epoch: float, lr: float) -> None:
        if not self.enabled:
            return
        text = f"epoch {epoch:6.2f} loss {loss:7.4f} lr {lr:.5f} words/sec {wps:,.0f}"
        if self.bar is not None:
            self.bar.update(n)
            self.bar.set_postfix_str(text, refresh=False)
        else:
            print(f"\rstep {step}/{self.total} {text}", end="", file=sys.stderr, flush=True)

    def write(self, lines: Sequence[str]) -> None:
        """Print ``lines`` on stdout without breaking the bar."""
        if self.bar is not None:
            for line in lines:
                self.bar.write(line, file=sys.stderr)
        else:
            if self.enabled:
                print(file=sys.stderr)
            print("\n".join(lines), flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        elif self.enabled:
            print(file=sys.stderr)
            self.enabled = False


def summary_writer(output_dir: str, enabled: bool, log: Callable[[str], None]) -> contextlib.AbstractContextManager:
    """A :class:`jaxgraph.summary.FileWriter` for ``output_dir`` as a context manager (closed however the run
    ends), or a null one when disabled or when tensorboardX is missing (said through ``log``)."""
    if enabled:
        try:
            return jg.summary.FileWriter(output_dir)
        except Exception as e:  # tensorboardX missing: not fatal
            log(f"TensorBoard summaries disabled: {e}")
    return contextlib.nullcontext()


class Outcome(NamedTuple):
    """How :meth:`TrainingLoop.run` ended: the state reached, the stop signal that ended it early (0: none), and
    the message of a periodic checkpoint that could not be written (None: none failed)."""

    params: Any
    opt_state: Any
    signum: int
    save_error: str | None


class TrainingLoop:
    """Runs the calls of one run from its start step to its end step (see the module docstring).

    ``after_call(step)``, if given, runs after each call (tests and benchmarks use it).
    """

    def __init__(self, step_fn: MultiStep, feed: CorpusFeed | StreamingFeed, plan: RunPlan, schedule: Schedule,
                 stats: RunStats, *,
                 checkpointer: Checkpointer, vocab: Sequence[str], eval_every: int, checkpoint_every: int,
                 chief: bool, after_call: Callable[[int], None] | None = None) -> None:
        self.step_fn, self.feed, self.plan, self.schedule, self.stats = step_fn, feed, plan, schedule, stats
        self.checkpointer, self.vocab = checkpointer, vocab
        self.eval_every, self.checkpoint_every, self.chief = eval_every, checkpoint_every, chief
        self.after_call = after_call
        self.step = 0  # the global step reached so far
        self.words_per_sec = 0.0  # of the last call
        self.saved: tuple[int, str] | None = None  # the step and path of this run's last checkpoint
        self.progress = Progress(plan.total_steps, 0, enabled=False)
        self.writer: jg.summary.FileWriter | None = None

    @property
    def boundaries(self) -> tuple[int, int]:
        """The periodic steps a call must end on."""
        return self.checkpoint_every, self.eval_every

    def run(self, params: Any, opt_state: Any, start_step: int, end_step: int, *, stop: StopRequest,
            progress: Progress, writer: jg.summary.FileWriter | None) -> Outcome:
        """Train from ``start_step`` to ``end_step``, reporting to ``progress`` and ``writer`` (None: no
        TensorBoard) and stopping early when ``stop`` is requested or a checkpoint fails (:class:`Outcome`).

        Raises:
            UsageError: the loss diverged.
            PeerLost: another process is gone (with the state of the last completed call).
            Interrupted: a second stop signal (the donated state may be gone: no checkpoint can be written).
        """
        self.step, self.progress, self.writer = start_step, progress, writer
        for n in self.plan.calls(start_step, end_step, self.boundaries):
            first = self.step
            params, opt_state, losses, pairs = self._call(params, opt_state, n)
            self.step += n
            self._report(first, losses, pairs)
            self._check_finite(first, losses)
            if self.after_call is not None:
                self.after_call(self.step)
            error = self._periodic(params, opt_state)
            try:  # a stop signal or a failed checkpoint in any process stops them all here
                signum, failed = stop_everywhere(stop.signum, error is not None)
            except Exception as e:
                raise PeerLost(lost_peer(e), params, opt_state, self.step) from None
            if failed:
                return Outcome(params, opt_state, 0, error or "process 0 could not write a checkpoint")
            if signum:
                return Outcome(params, opt_state, signum, None)
        return Outcome(params, opt_state, 0, None)

    def _call(self, params: Any, opt_state: Any, n: int) -> tuple[Any, Any, np.ndarray, np.ndarray]:
        t0 = time.perf_counter()
        try:
            data = self.feed.at(self.stats.position)
            new_params, new_opt_state, losses, pairs = self.step_fn(params, opt_state, data, n)
            losses, pairs, epoch, position = host_values(
                (losses, pairs, new_params["epoch"].value, new_params["position"].value))
        except Exception as e:
            if jax.process_count() == 1 or out_of_memory(e):
                raise
            # With several processes the state is not donated: the last completed call's is still here.
            raise PeerLost(lost_peer(e), params, opt_state, self.step) from None
        losses, pairs = losses[:n], pairs[:n]
        self.words_per_sec = self.stats.record(losses, pairs, int(epoch) * self.stats.n_tokens + int(position),
                                               time.perf_counter() - t0)
        return new_params, new_opt_state, losses, pairs

    def _check_finite(self, first: int, losses: np.ndarray) -> None:
        bad = np.flatnonzero(~np.isfinite(losses))
        if bad.size:
            raise UsageError(f"the loss diverged (non-finite) at step {first + int(bad[0]) + 1}; lower "
                             "--learning-rate")

    def _report(self, first: int, losses: np.ndarray, pairs: np.ndarray) -> None:
        lr = float(self.schedule(self.step))
        self.progress.update(self.step, len(losses), self.stats.average_loss, self.words_per_sec,
                             self.stats.epochs, lr)
        if self.writer is not None:
            self.writer.add_summary({"loss": losses / np.maximum(pairs, 1)}, global_step=first + 1)
            self.writer.add_scalar("words_per_sec", self.words_per_sec, global_step=self.step)
            self.writer.add_scalar("learning_rate", lr, global_step=self.step)

    def save(self, params: Any, opt_state: Any) -> str:
        """A checkpoint of the state at the current step (the chief's), unless this run saved it already."""
        if self.saved is None or self.saved[0] != self.step:
            self.saved = (self.step, self.checkpointer.save(params, opt_state))
        return self.saved[1]

    def _periodic(self, params: Any, opt_state: Any) -> str | None:
        """The chief's nearest neighbours and checkpoint due at this step; the failed checkpoint's message."""
        if not self.chief:
            return None
        if self.plan.due(self.eval_every, self.step) and self.step < self.plan.total_steps:
            self.progress.write(nearest_lines(host_values(params["emb_in"].value), self.vocab))
        if self.plan.due(self.checkpoint_every, self.step):
            try:
                self.save(params, opt_state)
            except CheckpointWriteError as e:
                return str(e)
        return None
