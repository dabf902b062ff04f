"""The run plan: how many steps a run takes, and how they are cut into compiled calls. Computed here, once.

* ``--steps N`` runs exactly N steps.
* ``--epochs E`` runs exactly the steps that take the corpus cursor through E epochs: the run ends with the first
  step whose batch reaches ``E * n`` tokens into the corpus (whole epochs end exactly at an epoch's end, since a
  batch never crosses one). The steps are counted before training by :func:`epoch_steps`, which replays the
  cursor of ``batches.BatchMaker`` on the host from the tokens that subsampling keeps in each epoch (the same hash
  the device uses), so the learning-rate schedule decays over exactly the steps that run.
* **Calls.** A compiled call runs ``--steps-per-call`` K steps; a call also ends at every step where something
  must happen (a ``--checkpoint-every`` or ``--eval-every`` step, ``--stop-at-step``, the end), so those fall on
  exactly their steps. A shorter call runs in a second compiled program (``step.MultiStep``), the same steps with
  the count as an argument: at most two programs per run, whatever the boundaries.
* **K for ``--replica-sync call``** when ``--steps-per-call`` is not given: :func:`replica_steps_per_call`, from
  the vocabulary and a step's pairs (the devices' updates are summed once per call, a pass over the tables).
* ``--stop-at-step`` ends a run early (with a checkpoint) without changing the plan, and so the schedule, so that
  ``--resume`` continues the same run.

>>> plan = RunPlan.from_flags(epochs=2.0, steps=None, steps_per_call=8, kept_tokens_per_epoch=1000.0,
...                           centres_per_step=30)
>>> plan.steps_per_epoch, plan.total_steps, plan.end_step(start_step=0, stop_at_step=40)
(33.333333333333336, 67, 40)
>>> list(plan.calls(0, 30, every=(10,)))      # calls of K = 8 steps end on each checkpoint step too
[8, 2, 8, 2, 8, 2]
>>> list(plan.calls(56, 67, every=()))        # the last call is shorter: exactly 67 steps
[8, 3]
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator, Sequence

import numpy as np

__all__ = ["RunPlan", "epoch_steps", "replica_steps_per_call"]


@dataclasses.dataclass(frozen=True)
class RunPlan:
    """``total_steps`` (exact), ``steps_per_call`` (K), the expected ``steps_per_epoch`` and, for ``--epochs``,
    the epochs the steps cover exactly (``exact_epochs``; None for ``--steps``)."""

    steps_per_call: int
    total_steps: int
    steps_per_epoch: float
    exact_epochs: float | None = None
    batches_per_step: int = 1
    total_batches: int | None = None
    steps_per_call_chosen: bool = False  # K from replica_steps_per_call, not --steps-per-call

    @property
    def batches_per_call(self) -> int:
        """The batches a full call makes (``steps_per_call`` x ``batches_per_step``): how far it reads the corpus."""
        return self.steps_per_call * self.batches_per_step

    def describe_batches(self) -> str:
        """For the plan line: how the batches map to the steps, when a step takes several."""
        if self.batches_per_step == 1:
            return ""
        n, k = self.batches_per_step, self.steps_per_call
        chosen = (" (chosen for the vocabulary and the step's pairs: plan.replica_steps_per_call; "
                  "--steps-per-call sets it)") if self.steps_per_call_chosen else ""
        return (f" on each of {n} devices ({self.total_batches:,} batches of the one-device run; a call of K = {k} "
                f"steps{chosen} covers {n} K of them, K consecutive ones per device, and then sums the devices' "
                "updates: --replica-sync call)")

    @classmethod
    def from_flags(cls, *, epochs: float, steps: int | None, steps_per_call: int, kept_tokens_per_epoch: float,
                   centres_per_step: int, steps_for_epochs: Callable[[float], int] | None = None,
                   batches_per_step: int = 1) -> RunPlan:
        """``--epochs`` / ``--steps`` / ``--steps-per-call`` for a corpus of ``kept_tokens_per_epoch`` expected
        centres per epoch, ``centres_per_step`` per batch. ``steps_for_epochs(E)``, when given, counts the batches of
        E epochs exactly (:func:`epoch_steps`); without it ``--epochs`` is converted with the expected figures.
        ``batches_per_step`` (``--replica-sync call``: one per device): a step trains that many batches (one on
        each device), those of the last step beyond the run's batches masked; ``--steps`` counts steps.

        >>> plan = RunPlan.from_flags(epochs=1.0, steps=None, steps_per_call=4, kept_tokens_per_epoch=1000.0,
        ...                           centres_per_step=30, steps_for_epochs=lambda e: 35, batches_per_step=2)
        >>> plan.total_steps, plan.total_batches, plan.steps_per_epoch, plan.batches_per_call
        (18, 35, 16.666666666666668, 8)
        """
        n = batches_per_step
        steps_per_epoch = kept_tokens_per_epoch / centres_per_step / n
        if steps is not None:
            return cls(steps_per_call, steps, steps_per_epoch, None, n, steps * n)
        if steps_for_epochs is not None:
            batches = max(1, steps_for_epochs(epochs))
            return cls(steps_per_call, -(-batches // n), steps_per_epoch, epochs, n, batches)
        total = max(1, math.ceil(epochs * steps_per_epoch * n))
        return cls(steps_per_call, -(-total // n), steps_per_epoch, None, n, total)

    @property
    def epochs(self) -> float:
        """The epochs the planned steps cover: exact for ``--epochs``, expected for ``--steps``."""
        return self.exact_epochs if self.exact_epochs is not None else self.total_steps / self.steps_per_epoch

    def end_step(self, start_step: int, stop_at_step: int | None) -> int:
        """Where this run stops: the plan's end, or ``--stop-at-step`` (never before where it starts)."""
        return self.total_steps if stop_at_step is None else min(self.total_steps, max(stop_at_step, start_step))

    def calls(self, start: int, end: int, every: Sequence[int]) -> Iterator[int]:
        """The lengths of the calls from step ``start`` to ``end``: K steps, or fewer to end at the next multiple
        of one of ``every`` (0: never) or at ``end``."""
        step = start
        while step < end:
            stop = min([end, step + self.steps_per_call] + [(step // e + 1) * e for e in every if e])
            yield stop - step
            step = stop

    def describe_calls(self, start: int, end: int, every: Sequence[int]) -> str:
        """The calls from ``start`` to ``end`` in words: ``"5 calls: 4 of 8 steps, 1 of 3 (the shorter ones in a
        second compiled program)"``."""
        lengths = list(self.calls(start, end, every))
        full = sum(1 for n in lengths if n == self.steps_per_call)
        short = sorted({n for n in lengths if n != self.steps_per_call})
        parts = [f"{full} of {self.steps_per_call} steps"] if full else []
        if short:
            sizes = ", ".join(map(str, short[:4])) + (", ..." if len(short) > 4 else "")
            parts.append(f"{len(lengths) - full} shorter ({sizes} steps; a second compiled program)")
        return f"{len(lengths)} call{'s' if len(lengths) != 1 else ''}: {' and '.join(parts)}" if parts else "0 calls"

    @staticmethod
    def due(every: int, step: int) -> bool:
        """Whether an action every ``every`` steps (0: never) falls on ``step``, where a call ended."""
        return bool(every) and step % every == 0


#: ``--replica-sync call``'s automatic K (:func:`replica_steps_per_call`): about this many skip-gram pairs per
#: vocabulary word per device between two sums of the devices' updates. Both sides of K's trade scale with it: the
#: sum at a call's end is a pass over the vocabulary's rows (its share of the call falls as K grows), and the
#: devices' delay grows with the pairs each row gets in a call before the devices see each other's updates.
#: Measured on the 2-core CPU (``benchmarks/README.md``, "automatic K"): a 15,000-word vocabulary kept its scores
#: at K = 256 (~17 pairs per word) and lost a third of its analogies at 1024 (~70); a 34,000-word one lost 0.5
#: points of analogies at 256 (~8) and 1.3 at 1024 (~31), while its speed over one device rose from 1.26x to 1.92x.
PAIRS_PER_WORD_PER_CALL = 16
#: Bounds on the automatic K: below 8 the sum dominates the call; 1024 is the largest K measured.
REPLICA_STEPS_PER_CALL = (8, 1024)
#: The automatic K leaves at least this many calls in a run (the devices' updates are summed at least that often).
MIN_REPLICA_CALLS = 8


def replica_steps_per_call(vocab_size: int, pairs_per_step: int, total_steps: int) -> int:
    """K (steps per call) for ``--replica-sync call`` when ``--steps-per-call`` is not given: the power of two
    nearest ``PAIRS_PER_WORD_PER_CALL * vocab_size / pairs_per_step`` (``pairs_per_step``: one device's skip-gram
    pairs per step), within ``REPLICA_STEPS_PER_CALL``, and no more than leaves ``MIN_REPLICA_CALLS`` calls in a run
    of ``total_steps`` steps. A function of the configuration and the corpus only, so a resumed run finds the same K.

    >>> replica_steps_per_call(vocab_size=15_000, pairs_per_step=1024, total_steps=100_000)   # 234 -> 256
    256
    >>> replica_steps_per_call(vocab_size=34_000, pairs_per_step=1024, total_steps=100_000)   # 531 -> 512
    512
    >>> replica_steps_per_call(vocab_size=15_000, pairs_per_step=1024, total_steps=1_000)     # 8 calls at least
    64
    """
    if vocab_size < 1 or pairs_per_step < 1 or total_steps < 1:
        raise ValueError(f"replica_steps_per_call needs positive sizes, got vocab_size={vocab_size}, "
                         f"pairs_per_step={pairs_per_step}, total_steps={total_steps}")
    low, high = REPLICA_STEPS_PER_CALL
    k = 2 ** round(math.log2(PAIRS_PER_WORD_PER_CALL * vocab_size / pairs_per_step))
    k = min(max(k, low), high)
    while k > 1 and k * MIN_REPLICA_CALLS > total_steps:
        k //= 2
    return k


def epoch_steps(kept_positions: np.ndarray, n_tokens: int, centres: int, forward: int,
                stop_at: float | None = None) -> int:
    """The steps one epoch takes: ``batches.BatchMaker``'s cursor replayed on the host.

    ``kept_positions``: the sorted corpus positions that subsampling keeps in this epoch. A step at position
    ``pos`` takes the first ``centres`` kept tokens of the raw span ``[pos, pos + forward)``; when the span holds
    more than that it moves to the next kept token, otherwise to ``pos + forward``; at or past ``n_tokens`` the
    epoch ends. ``stop_at`` (a position): count only the steps until the cursor reaches it (a partial epoch).

    >>> epoch_steps(np.arange(10), n_tokens=10, centres=3, forward=6)   # 0-2, 3-5, 6-8, then 9 alone
    4
    >>> epoch_steps(np.arange(10), n_tokens=10, centres=3, forward=6, stop_at=5)
    2
    """
    kept = np.asarray(kept_positions)  # int32 from BatchMaker: compared by differences, which cannot overflow
    end = n_tokens if stop_at is None else min(float(stop_at), n_tokens)
    steps, pos, rank = 0, 0, 0  # rank: the index in `kept` of the first kept token at or after pos
    while pos < end:
        # A run of full steps, vectorised: from a kept token at rank r, the step is full when the kept token at
        # rank r + centres lies less than `forward` past it, and the cursor moves there.
        if rank < len(kept) and kept[rank] == pos:
            ranks = np.arange(rank, len(kept) - centres, centres)
            full = kept[ranks + centres] - kept[ranks] < forward
            stops = ~full | (kept[ranks] >= end)
            run = int(np.argmax(stops)) if stops.any() else len(ranks)
            steps += run
            rank += run * centres
            pos = int(kept[rank]) if rank < len(kept) else n_tokens
            if pos >= end or run:
                continue
        # One step from a position that is not a kept token (the epoch's start, after a jump), or a short one.
        steps += 1
        first = int(np.searchsorted(kept, pos))
        if first + centres < len(kept) and int(kept[first + centres]) < pos + forward:
            rank = first + centres
            pos = int(kept[rank])
        else:
            pos += forward
            rank = int(np.searchsorted(kept, pos))
    return steps
